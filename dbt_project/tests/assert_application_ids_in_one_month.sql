-- An application id sits in one month only, so that no application is both trained on and
-- scored. Returns the ids stored under more than one month.

with

applications as (

    select * from {{ ref('int_applications_accumulated') }}

),

months_per_application as (

    select
        sk_id_curr,
        count(distinct month) as month_count
    from applications
    group by sk_id_curr

),

final as (

    select * from months_per_application
    where month_count > 1

)

select * from final
