{#
    A month label is 'history' (the initial file) or 'YYYY-MM' with a month from 01 to 12.
    Returns the rows whose label is neither.
#}
{% test month_label(model, column_name) %}

with

labels as (

    select {{ column_name }} as month
    from {{ model }}
    where {{ column_name }} is not null

),

parsed as (

    select
        month,
        {{ dbt.length('month') }} as label_length,
        substring(month, 5, 1) as separator,
        {{ safe_cast_integer('substring(month, 1, 4)') }} as year_number,
        {{ safe_cast_integer('substring(month, 6, 2)') }} as month_number
    from labels

),

final as (

    select month
    from parsed
    where
        month <> 'history'
        and (
            label_length <> 7
            or separator <> '-'
            or year_number is null
            or month_number is null
            or month_number not between 1 and 12
        )

)

select * from final

{% endtest %}
