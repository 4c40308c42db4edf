-- An application id sits in one month only, so that no application is both trained on and
-- scored. Returns the ids stored under more than one month.

with

applications as (

    select * from {{ ref('int_applications_accumulated') }}

),

months_per_application as (

    -- min and max instead of count(distinct): one pass without a distinct set per id.
    select
        sk_id_curr,
        min(month) as first_month,
        max(month) as last_month
    from applications
    group by sk_id_curr

),

final as (

    select * from months_per_application
    where first_month <> last_month

)

select * from final
