{#
    Sentinels of the Home Credit file that mean "missing": days_employed 365243 marks
    applicants without employment (mostly pensioners), and 'XNA' marks an unknown gender or
    organization. They become null, and a flag keeps the fact for the model.
#}
{%- set days_employed_sentinel = 365243 -%}
{%- set xna_columns = ['code_gender', 'organization_type'] -%}

with

raw_applications as (

    select * from {{ source('creditflow', 'raw_applications') }}

),

typed as (

    select
        cast(sk_id_curr as {{ dbt.type_bigint() }}) as sk_id_curr,
        cast(month as {{ dbt.type_string() }}) as month,
        cast(target as {{ dbt.type_int() }}) as target,
        {%- for column, kind in applicant_columns().items() %}
            cast({{ column }} as {{ applicant_column_type(kind) }}) as {{ column }},
        {%- endfor %}
        cast(load_id as {{ dbt.type_string() }}) as load_id
    from raw_applications

),

cleaned as (

    select
        sk_id_curr,
        month,
        target,
        {%- for column in applicant_columns() %}
            {%- if column == 'days_employed' %}
                case
                    when days_employed = {{ days_employed_sentinel }} then null
                    else days_employed
                end as days_employed,
            {%- elif column in xna_columns %}
                case
                    when {{ column }} = 'XNA' then null
                    else {{ column }}
                end as {{ column }},
            {%- else %}
                {{ column }},
            {%- endif %}
        {%- endfor %}
        coalesce(
            days_employed = {{ days_employed_sentinel }}, false
        ) as is_days_employed_sentinel,
        {%- for column in xna_columns %}
            coalesce({{ column }} = 'XNA', false) as is_{{ column }}_xna,
        {%- endfor %}
        load_id
    from typed

),

final as (

    select * from cleaned

)

select * from final
